"""Training a supernet: the configuration, the sandwich step, schedules, resume, ranks, tracking."""
