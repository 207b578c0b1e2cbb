"""The chart README's values table, from values.yaml: every key with its default and the
comment written above it (values.yaml is where values are documented; this keeps the README
in step). `--write` puts the table between the README's markers; without it, exits 1 when
the README's table is not what values.yaml gives (helm_check.py runs it so)."""

import pathlib
import re
import sys

CHART = pathlib.Path(__file__).resolve().parent.parent / "helm" / "dialtone"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_]+):(.*)$")


def rows(text):
    """(dotted key, default as written, description) of every key, in file order."""
    out, stack, comment = [], [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip().removeprefix("-- "))
            continue
        m = KEY.match(line)
        if not m or stripped.startswith("-"):
            comment = [] if not stripped else comment
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if rest:
            out.append((path, rest, " ".join(comment)))
        else:
            stack.append((indent, key))
            if comment:
                out.append((path, "", " ".join(comment)))
        comment = []
    return out


def table(text):
    lines = ["| key | default | description |", "|---|---|---|"]
    for path, default, desc in rows(text):
        cell = ("`" + default + "`").replace("|", "\\|") if default else ""
        desc = desc.replace("|", "\\|")
        lines.append(f"| `{path}` | {cell} | {desc} |")
    return "\n".join(lines)


def main():
    readme = CHART / "README.md"
    text = readme.read_text()
    want = table((CHART / "values.yaml").read_text())
    if START not in text or END not in text:
        print(f"{readme}: no {START} ... {END} markers", file=sys.stderr)
        sys.exit(1)
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    fresh = f"{head}{START}\n{want}\n{END}{tail}"
    if "--write" in sys.argv:
        readme.write_text(fresh)
    elif fresh != text:
        print("helm/dialtone/README.md's values table is out of date: "
              "python3 scripts/helm_values_table.py --write", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
