"""The run: its phases and stages, the local Ray, the run lock, and how a run stops."""
