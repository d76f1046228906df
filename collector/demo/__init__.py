"""`infermeter demo`: a collector, an agent daemon and a metered model on one machine."""
