"""The pure core: planner, Job and Service logic, node status, scheduler, and the Plan's actions.

No I/O and no clock: everything is passed in, so the same inputs always give the same plan."""
