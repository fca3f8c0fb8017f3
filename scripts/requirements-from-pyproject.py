#!/usr/bin/env python3
"""Print the requirements of the named extras (plus the core dependencies) from pyproject.toml.

Used by the Dockerfile to install dependencies in a layer of their own, before the code.
"""

import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project.get("optional-dependencies", {})
wanted = list(project.get("dependencies", []))
for name in sys.argv[1:]:
    if name not in extras:
        sys.exit(f"unknown extra {name!r}; pyproject.toml has {sorted(extras)}")
    wanted += [req for req in extras[name] if not req.startswith(project["name"])]
print("\n".join(dict.fromkeys(wanted)))
