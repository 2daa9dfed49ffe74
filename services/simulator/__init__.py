"""Simulated commune traffic: pure generators (`generate`, `traffic`) and a thin aiokafka shell (`__main__`)."""
