"""Everything that changes the live state from outside the frame path: the actions, the background
library, hotkeys (X11 and the desktop portal), the control socket's server and client, the config watcher,
and their wiring."""
