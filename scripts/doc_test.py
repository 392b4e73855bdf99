#!/usr/bin/python3
"""Run the ```sql blocks of a Markdown file, in order, against one database.

Usage: doc_test.py FILE.md -- PSQL COMMAND...   (the psql command line to run them with)

Each block runs in one psql session (ON_ERROR_STOP), statement by statement; any error
fails the test. A statement followed by a comment `-- => x` (on its line, or on the
lines after it before the next statement) must print exactly `x` (psql -At output, rows
joined by newlines). A block whose fence is preceded by the line
`<!-- doc-test: skip (reason) -->` is not run; the reason is printed.
"""
import re
import subprocess
import sys

FENCE_OPEN = re.compile(r"^(\s*)```sql\s*$")
FENCE_CLOSE = re.compile(r"^\s*```\s*$")
SKIP = re.compile(r"<!--\s*doc-test:\s*skip\s*(.*?)\s*-->")
EXPECT = re.compile(r"--\s*=>\s*(.*?)\s*$")


def blocks(path):
    """(first line number, [lines], skip reason or None) for each sql block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not FENCE_CLOSE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        yield start + 1, body, (skip.group(1) or "no reason given") if skip else None
        i += 1


def statements(body, first_line):
    """Split SQL text into (line, statement, expected output or None), outside quotes,
    dollar quotes and comments; `-- => x` comments attach to the last statement."""
    out = []
    cur, cur_line = [], None
    text = "\n".join(body)
    i, line = 0, first_line
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        if cur_line is None and not c.isspace():
            cur_line = line
        if text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            comment = text[i:j]
            m = EXPECT.search(comment)
            if m:
                if "".join(cur).strip():
                    raise SystemExit(f"line {line}: an expected output inside a statement")
                if not out:
                    raise SystemExit(f"line {line}: an expected output before any statement")
                ln, st, exp = out[-1]
                out[-1] = (ln, st, m.group(1) if exp is None else exp + "\n" + m.group(1))
            elif "".join(cur).strip():
                cur.append(comment)
            i = j
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and text.startswith("''", j):
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            line += text[i:j + 1].count("\n")
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        m = re.match(r"\$[A-Za-z_]*\$", text[i:])
        if m:
            tag = m.group(0)
            j = text.find(tag, i + len(tag))
            j = n if j < 0 else j + len(tag)
            line += text[i:j].count("\n")
            cur.append(text[i:j])
            i = j
            continue
        cur.append(c)
        if c == ";":
            out.append((cur_line, "".join(cur).strip(), None))
            cur, cur_line = [], None
        i += 1
    if "".join(cur).strip():
        raise SystemExit(f"line {cur_line}: a statement without its closing semicolon")
    return out


def main():
    path = sys.argv[1]
    psql = sys.argv[sys.argv.index("--") + 1:]
    run = skipped = checked = 0
    for first, body, skip in blocks(path):
        if skip is not None:
            print(f"doc-test: {path}:{first}: skipped {skip}")
            skipped += 1
            continue
        stmts = statements(body, first)
        script = ["\\set ON_ERROR_STOP 1"]
        for k, (_, st, _) in enumerate(stmts):
            script.append(st)
            script.append(f"\\echo @@doc-test {k}@@")
        r = subprocess.run(psql + ["-X", "-q", "-At"], input="\n".join(script) + "\n",
                           capture_output=True, text=True)
        outputs, acc = {}, []
        for ln in r.stdout.split("\n"):
            m = re.fullmatch(r"@@doc-test (\d+)@@", ln)
            if m:
                outputs[int(m.group(1))] = "\n".join(acc)
                acc = []
            else:
                acc.append(ln)
        if r.returncode != 0:
            failed = next((k for k in range(len(stmts)) if k not in outputs), None)
            where = f"line {stmts[failed][0]}: {stmts[failed][1]}" if failed is not None else ""
            print(f"doc-test: FAIL {path}:{first}: the block failed at {where}\n{r.stderr.strip()}")
            sys.exit(1)
        for k, (ln, st, exp) in enumerate(stmts):
            if exp is None:
                continue
            got = outputs.get(k, "").strip()
            if got != exp:
                print(f"doc-test: FAIL {path}:{ln}: {st}\n  expected: {exp}\n  got:      {got}")
                sys.exit(1)
            checked += 1
        run += 1
        print(f"doc-test: {path}:{first}: ok ({len(stmts)} statements)")
    print(f"doc-test: {path}: {run} blocks run, {checked} outputs checked, {skipped} skipped")
    if run == 0 or checked == 0:
        sys.exit("doc-test: no block ran, or no output was checked")


if __name__ == "__main__":
    main()
