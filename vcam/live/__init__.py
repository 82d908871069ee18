"""The live daemon's frame path, one module per part, so each can be read on its own.

slot.py (the one-slot handoff) -> capture.py (camera thread) -> segmenter_stage.py -> compositor_stage.py
-> output_stage.py (the pacer) -> sinks/ (virtual camera, preview, file, null); camera_gate.py opens and
releases the camera (pause, on-demand readers from ondemand.py); pipeline.py wires them and
reconfigure.py applies reloads; state.py holds the LiveState; placeholder.py draws the stills.
"""
