"""Energy on the device: sensors that each reduce to one cumulative counter, and the pieces that
turn their readings into energy per inference.

    sensor.py       Reading, the Sensor protocol, PowerIntegrator (power-only sources -> energy)
    rapl.py         Intel / AMD RAPL zones under /sys/class/powercap
    hwmon.py        generic hwmon energy*_input / power*_input
    jetson.py       Jetson INA3221 power rails (Nano, Xavier NX, AGX Orin layouts), GPU load
    nvidia.py       NVIDIA GPUs through NVML (total energy counter, or power integrated)
    triton.py       a local Triton server's nv_energy_consumption metric
    estimate.py     a documented power model where no sensor can be read
    probe.py        which sensors a device has, chosen so that their domains never overlap
"""
