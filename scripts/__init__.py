"""The project's scripts: CI checks (``check_imports``, ``check_sizes``) and the example image
builder (``demo_image``), each run as ``python3 scripts/<name>.py``. A package only so that the
tests' image builders can share ``demo_image``'s recipe; nothing under ``reconciler`` imports it."""
