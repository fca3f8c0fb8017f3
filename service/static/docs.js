// Renders /openapi.json: operations grouped by tag, schemas as trees, and a
// "try it" form per operation. Plain DOM, no dependencies, nothing fetched but
// this server's own endpoints, so it works offline.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let SCHEMAS = {};

function resolve(schema) {
  if (schema && schema.$ref) return SCHEMAS[schema.$ref.split("/").pop()] || {};
  return schema || {};
}

function typeLabel(schema) {
  if (schema.$ref) return schema.$ref.split("/").pop();
  const alt = schema.anyOf || schema.oneOf;
  if (alt) return alt.map(typeLabel).join(" | ");
  if (schema.type === "array") return typeLabel(schema.items || {}) + "[]";
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  return schema.type || "any";
}

const LIMITS = ["minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "maxItems",
                "minLength", "maxLength", "pattern", "default"];

function limits(schema) {
  const out = [];
  for (const key of LIMITS) if (schema[key] !== undefined) out.push(`${key} ${JSON.stringify(schema[key])}`);
  return out.length ? ` (${out.join(", ")})` : "";
}

// Nested objects are expanded, to a bounded depth: recursive models stay finite.
function schemaTree(schema, depth = 0) {
  const target = resolve(schema);
  const props = target.properties;
  if (!props || depth > 5) return null;
  const required = new Set(target.required || []);
  const list = el("ul", { class: "schema" });
  for (const [name, prop] of Object.entries(props)) {
    const inner = resolve(prop.items && prop.type === "array" ? prop.items : prop);
    const anyRef = (prop.anyOf || []).find((s) => s.$ref);
    list.append(el("li", {},
      el("span", { class: "name" }, name), ": ",
      el("span", { class: "type" }, typeLabel(prop)),
      required.has(name) ? el("span", { class: "req" }, " required") : null,
      limits(prop),
      prop.description || inner.description
        ? el("span", { class: "desc" }, " — " + (prop.description || inner.description)) : null,
      schemaTree(anyRef || (prop.type === "array" ? prop.items : prop), depth + 1)));
  }
  return list;
}

// The document's example, fitted to the first model served, so "Send" works as is: a /v1 history
// stretched to its window, a V2 tensor of shape [1, window, features].
function fitExample(example) {
  const window_ = window.SEQCAST_WINDOW, features = window.SEQCAST_FEATURES || 1;
  if (!example || !window_) return example;
  const fitted = JSON.parse(JSON.stringify(example));
  for (const s of fitted.series || []) {
    const base = s.values;
    s.values = Array.from({ length: window_ }, (_, i) => base[i % base.length]);
    delete s.start; delete s.timestamps;  // dates of the example need not be on the model's frequency
  }
  for (const t of fitted.inputs || []) {
    const base = t.data;
    t.shape = [1, window_, features];
    t.data = Array.from({ length: window_ * features }, (_, i) => base[i % base.length]);
  }
  return fitted;
}

function tryIt(path, method, op) {
  // data-* name what the form sends (tests/test_docs_page.py sends it as the page prefilled it)
  const box = el("div", { class: "try", "data-path": path, "data-method": method });
  const params = (op.parameters || []).filter((p) => p.in === "path");
  const inputs = {};
  const prefill = { name: window.SEQCAST_MODEL || "", version: window.SEQCAST_VERSION || "" };
  for (const p of params) {
    inputs[p.name] = el("input", { value: prefill[p.name] || "", "data-param": p.name });
    box.append(el("label", {}, p.name), inputs[p.name]);
  }
  const example = fitExample(op.requestBody && op.requestBody.content["application/json"].example);
  const body = example !== undefined ? el("textarea", { class: "try-body" }, JSON.stringify(example, null, 2)) : null;
  if (body) box.append(el("label", {}, "body (application/json)"), body);
  // Routes that name a security scheme take a key as a bearer token (open while none is set).
  const schemes = (op.security || []).flatMap((s) => Object.keys(s));
  const which = schemes.includes("adminKey") ? "admin key" : schemes.includes("metricsKey") ? "metrics key" : "API key";
  const key = schemes.length
    ? el("input", { type: "password", autocomplete: "off", placeholder: `${which}, if one is set` }) : null;
  if (key) box.append(el("label", {}, which), key);
  const out = el("pre", { class: "out" }, "—");
  const send = el("button", { type: "button" }, "Send");
  send.addEventListener("click", async () => {
    const empty = params.find((p) => !inputs[p.name].value.trim());
    if (empty) { out.textContent = `fill in ${empty.name} first`; return; }  // never /versions//infer
    let url = path;
    for (const p of params) url = url.replace(`{${p.name}}`, encodeURIComponent(inputs[p.name].value.trim()));
    out.textContent = "…";
    try {
      const init = { method: method.toUpperCase() };
      init.headers = {};
      if (body) { init.body = body.value; init.headers["Content-Type"] = "application/json"; }
      if (key && key.value) init.headers.Authorization = `Bearer ${key.value}`;
      const res = await fetch(url, init);
      const text = await res.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: show as is */ }
      out.textContent = `${res.status} ${res.statusText}\n` + shown;
    } catch (err) {
      out.textContent = String(err);
    }
  });
  box.append(send, out);
  return box;
}

function operation(path, method, op, id) {
  const bodyDiv = el("div", { class: "body" });
  if (op.description) bodyDiv.append(el("p", {}, op.description));
  if (op.requestBody) {
    const schema = op.requestBody.content["application/json"].schema;
    bodyDiv.append(el("h4", {}, "Request body: ", typeLabel(schema)), schemaTree(schema));
  }
  const rows = Object.entries(op.responses || {}).map(([code, r]) => {
    const schema = r.content && (r.content["application/json"] || r.content["text/plain"]).schema;
    return el("tr", {}, el("td", {}, code), el("td", {}, r.description || ""),
              el("td", {}, schema ? typeLabel(schema) : ""));
  });
  bodyDiv.append(el("h4", {}, "Responses"), el("table", {}, rows));
  const ok = op.responses && op.responses["200"] && op.responses["200"].content;
  const okSchema = ok && ok["application/json"] && ok["application/json"].schema;
  if (okSchema && resolve(okSchema).properties) bodyDiv.append(el("h4", {}, "200 body"), schemaTree(okSchema));
  bodyDiv.append(el("h4", {}, "Try it"), tryIt(path, method, op));
  const attrs = { class: "op", id };
  if (path.endsWith("/forecast")) attrs.open = "";  // the one most readers came for
  return el("details", attrs,
    el("summary", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
       el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")),
    bodyDiv);
}

async function main() {
  const container = document.getElementById("ops");
  let doc;
  try {
    const res = await fetch("/openapi.json");
    doc = await res.json();
  } catch (err) {
    container.textContent = "Could not load /openapi.json: " + err;
    return;
  }
  SCHEMAS = (doc.components && doc.components.schemas) || {};
  document.getElementById("title").textContent = `${doc.info.title} API ${doc.info.version}`;
  document.getElementById("description").textContent = doc.info.description || "";
  try {  // prefill the model name in "try it" forms with the first model served
    const models = await (await fetch("/v1/models")).json();
    const first = models.models.find((m) => m.spec) || models.models[0];
    window.SEQCAST_MODEL = first ? first.name : "";
    window.SEQCAST_WINDOW = first && first.spec ? first.spec.input_window.length : 0;
    window.SEQCAST_FEATURES = first && first.spec ? first.spec.features.length : 1;
    window.SEQCAST_VERSION = first ? first.version || "" : "";
  } catch (e) { window.SEQCAST_MODEL = ""; }
  container.replaceChildren();
  const toc = document.getElementById("toc");
  let n = 0;
  for (const tag of doc.tags || [{ name: "" }]) {
    toc.append(el("h3", {}, tag.name));
    container.append(el("h2", {}, tag.name + (tag.description ? ` — ${tag.description}` : "")));
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if ((op.tags || [""])[0] !== tag.name) continue;
        const id = `op-${n++}`;
        container.append(operation(path, method, op, id));
        toc.append(el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`));
      }
    }
  }
}

document.addEventListener("DOMContentLoaded", main);
