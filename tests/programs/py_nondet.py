"""py_nondet.py -- a Python guest that prints the usual sources of
non-determinism a Python program meets: wall and monotonic time, os.urandom,
the random module (seeded from urandom), uuid4, id() (an address: ASLR),
hash() of a str (PYTHONHASHSEED is random by default), datetime.now() and
the pid. Output: one name=value per line, then checksum=<FNV-1a of the lines>.
"""
import datetime
import os
import random
import time
import uuid

_fnv = 0xCBF29CE484222325


def out(name, value):
    global _fnv
    line = f"{name}={value}"
    for b in line.encode():
        _fnv ^= b
        _fnv = (_fnv * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    print(line)


out("time_time", repr(time.time()))
out("time_monotonic", repr(time.monotonic()))
out("os_urandom", os.urandom(8).hex())
out("random_random", repr(random.random()))
out("uuid4", uuid.uuid4())
out("id_object", id(object()))
out("hash_str", hash("tft"))
out("datetime_now", datetime.datetime.now().isoformat())
out("getpid", os.getpid())
print(f"checksum={_fnv:016x}")
