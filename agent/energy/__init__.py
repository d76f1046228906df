"""Energy on the device: sensors that each reduce to one cumulative counter, and the pieces that
turn their readings into energy per inference.

    sensor.py         Reading, the Sensor protocol, PowerIntegrator (power-only sources -> energy)
    sysfs.py          reading sysfs attribute files, failures sorted by kind
    rapl.py           Intel / AMD RAPL zones under /sys/class/powercap
    hwmon.py          generic hwmon energy*_input / power*_input
    jetson.py         Jetson INA3221 power rails (Nano, Xavier NX, AGX Orin layouts), GPU load
    nvml.py           the Nvml facade (one method per NVML call), NvmlError, PynvmlNvml over pynvml
    nvml_recorded.py  RecordedNvml: recorded NVML answers replayed, for running without a GPU
    nvidia.py         NVIDIA GPUs through NVML (total energy counter, or power integrated)
    nvml_usage.py     GPU processes (memory, SM share, MIG device) and utilization, for the sampler
    triton.py         a local Triton server's nv_energy_consumption metric
    estimate.py       a documented power model where no sensor can be read
    probe.py          which sensors a device has, chosen so that their domains never overlap
"""
