#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter (the Lambda runtime's version).
set -euo pipefail
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for candidate in "$root"/versions/3.13*/bin/python3 /usr/local/bin/python3.13 /usr/bin/python3.13; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    echo "$candidate"
    exit 0
  fi
done
echo "Python 3.13 not found (looked in $root/versions/3.13*, /usr/local/bin, /usr/bin): install it (e.g. 'pyenv install 3.13') and try again" >&2
exit 1
