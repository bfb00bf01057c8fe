"""Files at the edges: the competition CSVs checked at the boundary (`data`), the dev split (`devsplit`), the
candidate store and stage tables (`candidates`), reference files (`references`), the submission (`submission`), the
run report's files (`report` for report.md/png, `html_report` for report.html) and atomic writes (`files`).

Imports only core modules (errors, config); nothing from scoring, selection, models, engine, tune, commands or cli.
"""
