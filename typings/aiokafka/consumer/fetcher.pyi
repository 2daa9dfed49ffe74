# What services/common/header_names.py replaces: the name the fetcher builds a fetch's records with.
from aiokafka.record.memory_records import MemoryRecords as MemoryRecords
