// axe-core in the browser suite: checks a page against the WCAG 2.1 A and AA rules and reports every violation.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** The rule sets every page must pass. */
export const WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/**
 * Runs axe-core on the page as it is now; resolves to its violations, each { id, impact, help, nodes: [{ target,
 * message }] }. The dashboard's CSP forbids inline scripts, so axe is not added as a <script> tag: it is evaluated
 * through the DevTools protocol, which the CSP does not govern, and the page keeps its real CSP.
 */
export async function axeViolations(page) {
  await page.waitForLoadState("load");
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  return page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(" "), message: n.failureSummary })),
    }));
  }, WCAG_TAGS);
}

/** The violations as text: rule id, impact, help, then each element's selector and what is wrong with it. */
export function describeViolations(violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes.map((n) => `    ${n.target}\n      ${n.message.replace(/\n/g, "\n      ")}`).join("\n");
      return `  ${v.id} (${v.impact}): ${v.help}\n${nodes}`;
    })
    .join("\n");
}

/** Collects axe results over many pages and fails once, listing every page's violations. */
export class Audit {
  constructor() {
    this.checked = [];
    this.failures = [];
  }

  /** Checks the page as it is now, under the name `what`. */
  async check(page, what) {
    const violations = await axeViolations(page);
    this.checked.push(what);
    if (violations.length) this.failures.push(`${what} (${page.url()}):\n${describeViolations(violations)}`);
  }

  /** Fails with the full report if any page had a violation. */
  assertClean() {
    assert.ok(this.checked.length > 0, "no page was checked");
    assert.equal(
      this.failures.length,
      0,
      `axe-core (${WCAG_TAGS.join(", ")}) found violations on ${this.failures.length} of ${this.checked.length} pages:\n\n${this.failures.join("\n\n")}`,
    );
  }
}
