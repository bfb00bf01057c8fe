"""The commands behind the CLI, one module per command or group (`runs`, `ensemble`, `postprocess`, `score`, `tune`,
`preview`, `report`, `parallel`): each function takes the parsed arguments, calls the packages below, prints what the
user reads and returns the exit code. Models are imported only inside functions, so a command that loads no model
never pays for torch.
"""
