# Only what services/common/kip447.py uses: the connection group of coordinator requests.
from enum import IntEnum

class ConnectionGroup(IntEnum):
    DEFAULT = 0
    COORDINATION = 1

class CoordinationType(IntEnum):
    GROUP = 0
    TRANSACTION = 1
