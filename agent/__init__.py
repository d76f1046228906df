"""infermeter agent: meters inferences on the device and ships the records to a collector."""

from agent.enforcer import BudgetExceeded
from agent.meter import Meter, MeterStats
from agent.router import Route, RoutePolicy

__all__ = ["BudgetExceeded", "Meter", "MeterStats", "Route", "RoutePolicy"]
