"""Reliability under faults (issue 5): SIGKILL crash-and-resume trials and their harness."""
