"""The type of a task's ``objective`` argument: the registry names of ``pdrl.losses.OBJECTIVES``.

As a ``Literal`` of the names, the command line checks ``--model.objective`` while it parses the config (so
``--print_config`` refuses an unknown name too) and ``--help`` lists the choices.
"""

from __future__ import annotations

from typing import Literal

from pdrl.losses import OBJECTIVES

ObjectiveName = Literal[tuple(OBJECTIVES)]  # type: ignore[valid-type]
