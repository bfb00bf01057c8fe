"""Files at the edges: the competition CSVs checked at the boundary (`data`), the dev split (`devsplit`), the
candidate store and stage tables (`candidates`), reference files (`references`), the submission (`submission`) and
atomic writes (`files`).
"""
