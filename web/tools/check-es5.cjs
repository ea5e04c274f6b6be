// Does a file run on an ES5 engine (a 2012 browser)? acorn with ecmaVersion 5
// refuses ES2015+ syntax (arrow functions, class, let/const, template strings,
// spread, ...); the walk below refuses the ES2015+ built-ins such a browser
// lacks, unless only probed with `typeof`.
//
//   NODE_PATH=<a node_modules holding acorn> node web/tools/check-es5.cjs longpoll/web/longpoll.js longpoll/web/jquery.longpoll.js
//
// tests/test_js.py installs acorn at test time and runs this.
"use strict";
const fs = require("fs");
const acorn = require("acorn");

const GLOBALS = new Set(["Promise", "Map", "Set", "WeakMap", "WeakSet", "Symbol", "Proxy", "Reflect", "URL",
  "URLSearchParams", "globalThis", "fetch", "AbortController", "queueMicrotask", "structuredClone"]);
const STATICS = new Set(["Object.assign", "Object.entries", "Object.values", "Object.fromEntries", "Object.is",
  "Array.from", "Array.of", "Number.isFinite", "Number.isNaN", "Number.isInteger", "Number.parseFloat",
  "Number.parseInt", "Number.EPSILON", "String.raw", "String.fromCodePoint", "Math.trunc", "Math.sign"]);
const METHODS = new Set(["includes", "startsWith", "endsWith", "repeat", "padStart", "padEnd", "find", "findIndex",
  "findLast", "fill", "flat", "flatMap", "at", "copyWithin", "trimStart", "trimEnd", "codePointAt", "normalize",
  "replaceAll", "finally"]);

function walk(node, parent, visit) {
  visit(node, parent);
  for (const key of Object.keys(node)) {
    const value = node[key];
    for (const child of Array.isArray(value) ? value : [value]) {
      if (child && typeof child.type === "string") walk(child, node, visit);
    }
  }
}

/** `typeof name !== "undefined"` (or !=, either side): the guard of `... ? name : fallback`. */
function probes(test, name) {
  if (test.type !== "BinaryExpression" || !/^!==?$/.test(test.operator)) return false;
  return [test.left, test.right].some((side) => side.type === "UnaryExpression" && side.operator === "typeof" &&
    side.argument.type === "Identifier" && side.argument.name === name);
}

function problems(source) {
  let ast;
  try {
    ast = acorn.parse(source, { ecmaVersion: 5, sourceType: "script", locations: true });
  } catch (error) {
    return [`${error.loc ? error.loc.line + ":" + error.loc.column : "?"}: not ES5 syntax: ${error.message}`];
  }
  const found = [];
  walk(ast, null, (node, parent) => {
    const at = `${node.loc.start.line}:${node.loc.start.column}`;
    if (node.type === "Identifier" && GLOBALS.has(node.name)) {
      const probed = parent && ((parent.type === "UnaryExpression" && parent.operator === "typeof") ||
        (parent.type === "ConditionalExpression" && parent.consequent === node && probes(parent.test, node.name)));
      const aName = parent && ((parent.type === "MemberExpression" && parent.property === node && !parent.computed) ||
        (parent.type === "Property" && parent.key === node));
      if (!probed && !aName) found.push(`${at}: ${node.name} is not in ES5 browsers (probe it with typeof)`);
    }
    if (node.type === "MemberExpression" && !node.computed) {
      const name = node.property.name;
      if (node.object.type === "Identifier" && STATICS.has(`${node.object.name}.${name}`)) {
        found.push(`${at}: ${node.object.name}.${name} is not in ES5 browsers`);
      } else if (METHODS.has(name)) {
        found.push(`${at}: .${name}() is not in ES5 browsers`);
      }
    }
  });
  return found;
}

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const problem of problems(fs.readFileSync(file, "utf8"))) {
    console.log(`${file}:${problem}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
