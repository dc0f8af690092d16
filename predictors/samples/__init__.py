"""<config, accuracy> sample files: drawing subnets, measuring them into a CSV, reading them."""
