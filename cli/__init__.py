"""`portal-domains`: the operator command line, one module per command group.

`cli.main` builds the parser from each group's `register`; `cli.output` is the
only place that prints; `cli.exit_codes` names every exit code.
"""
