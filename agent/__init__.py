"""infermeter agent: meters inferences on the device and ships the records to a collector."""
