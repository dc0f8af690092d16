"""CQAP accuracy predictors: encoding, sample datasets, backends, the predictor oracle."""
