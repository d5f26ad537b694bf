"""The harness: scenarios, plans, metrics, runner, comparison, reports and the CLI."""
