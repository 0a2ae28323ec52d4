"""The commit a benchmark run measured, for the reports: what the script built.

The scripts write `commit.txt` in their output directory when they build (`benches/common.sh`,
`benches/micro.sh`): the short hash, then `dirty` if the tree had uncommitted changes to anything
but docs/benchmarks.md (the reports' own output). A report run after later commits still names
the commit measured. Without the file (an older run), HEAD now.
"""
import datetime
import os
import subprocess


def commit_of(out):
    """(short hash, dirty) of the run whose outputs are in `out`."""
    path = out if os.path.isdir(out) else os.path.dirname(out)
    f = os.path.join(path, "commit.txt")
    if os.path.exists(f):
        words = open(f).read().split()
        if words:
            return words[0], "dirty" in words[1:]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md"],
        capture_output=True, text=True,
    ).stdout.strip()
    return commit, bool(dirty)


def run_date(out):
    """The day the run whose outputs are in `out` built (its `commit.txt`), so a report re-written
    later from stored outputs keeps the run's date; without the file, today."""
    path = out if os.path.isdir(out) else os.path.dirname(out)
    f = os.path.join(path, "commit.txt")
    if os.path.exists(f):
        return datetime.date.fromtimestamp(os.path.getmtime(f))
    return datetime.date.today()


def write_section(name, text, doc_path="docs/benchmarks.md"):
    """Puts `text` (which opens with `<!-- NAME:begin` and closes with `<!-- NAME:end -->`) in
    place of the section of that name in the doc, or at its end the first time; prints it."""
    end = f"<!-- {name}:end -->"
    doc = open(doc_path).read()
    b, e = doc.find(f"<!-- {name}:begin"), doc.find(end)
    if b < 0 or e < 0:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    else:
        doc = doc[:b] + text + doc[e + len(end):]
    open(doc_path, "w").write(doc)
    print(text)
    print(f"{doc_path} updated")

