"""The commands behind the CLI, one module per group (`runs`, `select`, `score`, `tune`, `preview`): each function
takes the parsed arguments, calls the packages below, prints what the user reads and returns the exit code.

May import anything except cli; imports models only inside functions, so a command that loads no model never pays
for torch.
"""
