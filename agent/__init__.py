"""infermeter agent: meters inferences on the device and ships the records to a collector."""

from agent.meter import Meter, MeterStats

__all__ = ["Meter", "MeterStats"]
