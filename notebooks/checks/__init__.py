"""The course's exercise checks, and the wrong answers each one must reject.

Each notebook's check cell calls one function here, ``ex_1_2(inputs, r.trace)``:
the student's answer first, then the data the notebook computed. The check works
out the right answer from that same data (never from the student's own value)
and raises ``AssertionError`` with a hint if the answer is not it.

Beside each check are *wrong answers*, written as functions of the solution and
the data: off by one, the other replica, the other workload or mode, a
hard-coded value, the placeholder ``None``. :func:`mutate` substitutes each one
for the answer a check was last called with and asserts that the check rejects
it; ``tests/test_exercises.py`` runs it after every check cell of every
notebook, live and on the canned data.
"""
from ._core import EXERCISES, NOT_APPLICABLE, Ctx, Exercise, mutate
from .nb1_syscalls import *  # noqa: F401,F403 - the check functions, ex_1_1 ...
from .nb2_replay import *  # noqa: F401,F403
from .nb3_signals import *  # noqa: F401,F403
from .nb4_commit import *  # noqa: F401,F403
from .nb5_failover import *  # noqa: F401,F403
from .nb6_objects import *  # noqa: F401,F403
from .nb7_overhead import *  # noqa: F401,F403
from .nb8_corpus import *  # noqa: F401,F403
from .nb9_threads import *  # noqa: F401,F403
from .nb2_replay import lie_target
from .nb3_signals import first_deferrals
from .nb4_commit import primary_outputs

__all__ = ["EXERCISES", "NOT_APPLICABLE", "Ctx", "Exercise", "mutate", "lie_target", "first_deferrals",
           "primary_outputs"] + sorted(k for k in dir() if k.startswith("ex_"))
