"""deeprobe-bench: which feature-discovery method finds the features a model really uses?"""

__version__ = "0.1.0"
