"""infermeter agent: meters inferences on the device and ships the records to a collector."""

from agent.enforcer import BudgetExceeded
from agent.meter import Meter, MeterStats

__all__ = ["BudgetExceeded", "Meter", "MeterStats"]
