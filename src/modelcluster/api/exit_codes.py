"""How the runtime's process ends, as the operator reads it back from a pod's container status."""

from __future__ import annotations

#: The model could not be loaded (a gated repository without a token, a wrong id, too little memory). The
#: runtime writes the cause to its termination message before it exits with this code.
MODEL_LOAD_FAILED_EXIT_CODE = 4
