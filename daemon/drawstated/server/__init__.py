"""The daemon process: lifecycle, connections, flow control, and what it guards on its host."""
