"""Networks: the registered models, the elastic supernet and its layers, subnet extraction."""
