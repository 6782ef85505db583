"""Each web process gives the C heap's free pages back to the system from time to time
(config/web_worker.py): glibc's heap shrinks only from its top, and a request's freed buffers
below a block still in use stayed resident (15-20 MB a process after bench/soak.py's rough
day)."""

from tests.fresh_interpreter import printed_json

# 40 MB of 2 kB buffers (each from glibc's heap, not Python's small-object allocator), all but
# one in fifty freed: the kept ones pin the heap, so nothing goes back until it is trimmed.
FRAGMENTED_THEN_TRIMMED = """
import json
from config.web_worker import heap_trim

def private_kb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])

buffers = [bytearray(2048) for _ in range(20_000)]
kept = buffers[::50]
del buffers
before = private_kb()
trimmed = heap_trim()
print(json.dumps({"trimmed": trimmed, "before": before, "after": private_kb()}))
"""


def test_trimming_the_heap_gives_the_freed_buffers_back_to_the_system() -> None:
    memory = printed_json(FRAGMENTED_THEN_TRIMMED)
    assert memory["trimmed"] is True
    assert memory["before"] - memory["after"] > 30 * 1024, memory
