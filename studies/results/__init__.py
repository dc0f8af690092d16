"""Every study behind the docs' result tables, run with seeds and aggregated
(``eqsearch study all``)."""
