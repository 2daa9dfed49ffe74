// Parse an AsyncAPI document with the official parser; print every diagnostic; exit 1 on any error.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const level = ["error", "warning", "info", "hint"][d.severity] ?? d.severity;
  console.log(`${level} ${d.code} ${(d.path || []).join(".")}: ${d.message}`);
}
if (!document || errors.length) {
  console.log(`INVALID: ${errors.length} errors`);
  process.exit(1);
}
const channels = document.channels().all().map((c) => c.address());
const messages = document.messages().all().length;
console.log(JSON.stringify({ valid: true, version: document.version(), channels, messages }));
