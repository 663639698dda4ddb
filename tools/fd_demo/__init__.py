"""Helpers of tools/run_demo.py (`make demo`): the digits data, the step runner,
the multi-seed fine-tune runner, the linear probe and the summary. They ship with
the repository tools, not in the installed package."""
