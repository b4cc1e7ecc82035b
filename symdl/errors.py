"""symdl's own exceptions, in a module light enough for the CLI to import up front."""


class FormulaError(ValueError):
    """A formula definition is malformed (bad name, unknown symbol, ...)."""
