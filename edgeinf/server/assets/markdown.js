// Markdown to DOM nodes, never to HTML: every piece of text a model writes goes in through
// textContent, so none of it can become markup, and links lead only to http(s) and mailto.

const SAFE_LINK = /^(https?:\/\/|mailto:)/i;
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Inline spans, earliest first; each names the group holding its content.
const SPANS = [
  ["code", /`([^`\n]+)`/],
  ["image", /!\[([^\]\n]*)\]\(([^()\s]+)(?:\s+"[^"\n]*")?\)/],
  ["link", /\[([^\]\n]+)\]\(([^()\s]+)(?:\s+"[^"\n]*")?\)/],
  ["auto", /<((?:https?:\/\/|mailto:)[^>\s]+)>/],
  ["strong", /\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__/],
  ["em", /\*(?=[^\s*])([^*\n]*?[^\s*])\*|(?<![\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w])/],
  ["del", /~~(?=\S)([^\n]*?\S)~~/],
];

function link(href, label) {
  if (!SAFE_LINK.test(href)) return null;
  const a = el("a", "", label);
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return a;
}

export function inline(text, parent) {
  while (text) {
    let best = null;
    for (const [kind, pattern] of SPANS) {
      const m = pattern.exec(text);
      if (m && (best === null || m.index < best.m.index)) best = { kind, m };
    }
    if (best === null) {
      parent.append(text);
      return;
    }
    const { kind, m } = best;
    if (m.index) parent.append(text.slice(0, m.index));
    const inner = m[1] ?? m[2] ?? "";
    let node = null;
    if (kind === "code") node = el("code", "", inner);
    else if (kind === "link") {
      node = link(m[2], "");
      if (node) inline(inner, node);
    } else if (kind === "image") node = link(m[2], inner || m[2]); // shown as a link, not loaded
    else if (kind === "auto") node = link(inner, inner);
    else {
      node = el(kind === "strong" ? "strong" : kind === "em" ? "em" : "del");
      inline(inner, node);
    }
    parent.append(node ?? m[0]); // a link nowhere safe stays the text that was written
    text = text.slice(m.index + m[0].length);
  }
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function table(head, rows) {
  const t = el("table");
  const tr = el("tr");
  for (const c of cells(head)) {
    const th = el("th");
    inline(c, th);
    tr.append(th);
  }
  t.append(el("thead"));
  t.firstChild.append(tr);
  const body = el("tbody");
  for (const row of rows) {
    const r = el("tr");
    for (const c of cells(row)) {
      const td = el("td");
      inline(c, td);
      r.append(td);
    }
    body.append(r);
  }
  t.append(body);
  return t;
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_RULE.test(next) && next.includes("-"))
  );
}

function list(lines, start) {
  const first = ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  let i = start;
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const body = [lines[i].slice(m[0].length)];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        const next = lines[i + 1];
        if (next === undefined || (next.search(/\S/) <= indent && !ITEM.test(next))) break;
        loose = true;
        body.push("");
        i++;
        continue;
      }
      const sub = ITEM.exec(line);
      if (sub && sub[1].length <= indent) break;
      if (!sub && line.search(/\S/) <= indent && startsBlock(line, lines[i + 1])) break;
      body.push(line.slice(Math.min(line.search(/\S/), indent + 2)));
      i++;
    }
    items.push(body);
  }
  for (const body of items) {
    const li = el("li");
    const inner = render(body.join("\n"));
    if (!loose && inner.childElementCount === 1 && inner.firstChild.tagName === "P") {
      li.append(...inner.firstChild.childNodes);
    } else if (!loose && inner.firstChild && inner.firstChild.tagName === "P") {
      const p = inner.firstChild;
      inner.removeChild(p);
      li.append(...p.childNodes, inner);
    } else li.append(inner);
    node.append(li);
  }
  return [node, i];
}

// The whole text as a fragment of block nodes; an unclosed code fence (an answer still
// streaming) runs to the end.
export function render(text) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if ((m = FENCE.exec(line))) {
      const marker = m[1];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(marker)) body.push(lines[i++]);
      i++;
      out.append(codeBlock(body.join("\n"), m[2]));
    } else if ((m = HEADING.exec(line))) {
      const h = el(`h${m[1].length}`);
      inline(m[2], h);
      out.append(h);
      i++;
    } else if (RULE.test(line)) {
      out.append(el("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && lines[i].trim() && QUOTE.test(lines[i])) {
        body.push(lines[i++].replace(QUOTE, ""));
      }
      const q = el("blockquote");
      q.append(render(body.join("\n")));
      out.append(q);
    } else if (ITEM.test(line)) {
      const [node, next] = list(lines, i);
      out.append(node);
      i = next;
    } else if (startsBlock(line, lines[i + 1])) {
      const head = line;
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(lines[i++]);
      const wrap = el("div", "table");
      wrap.append(table(head, rows));
      out.append(wrap);
    } else {
      const body = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
        body.push(lines[i++]);
      }
      const p = el("p");
      body.forEach((part, n) => {
        if (n) p.append(el("br"));
        inline(n < body.length - 1 ? part.replace(/\s+$/, "") : part, p);
      });
      out.append(p);
    }
  }
  return out;
}

export function codeBlock(code, lang) {
  const figure = el("figure", "code");
  const bar = el("figcaption");
  bar.append(el("span", "lang", lang || "text"));
  const copy = el("button", "copy", "Copy");
  copy.type = "button";
  copy.dataset.copy = code;
  bar.append(copy);
  const pre = el("pre");
  const c = el("code");
  c.append(highlight(code, lang));
  pre.append(c);
  figure.append(bar, pre);
  return figure;
}

// A small highlighter for the languages a coder model writes most: comments, strings,
// numbers and keywords get a class each; everything else is plain text.
const KEYWORDS = new Set(
  (
    "and as assert async await break case catch class const continue def default del do " +
    "elif else enum except export extends false False finally fn for from func function " +
    "go if impl import in interface is lambda let loop match mod mut new nil None not null " +
    "or package pass pub raise return self static struct super switch this throw true True " +
    "try type typeof use var void while with yield int float str bool char long double " +
    "select where insert update delete create table into values echo fi then done esac"
  ).split(" "),
);
const HASH_COMMENTS = new Set(["python", "py", "sh", "bash", "shell", "zsh", "ruby", "rb",
  "yaml", "yml", "toml", "r", "perl", "make", "makefile", "dockerfile", "ini", "conf"]);
const TOKEN =
  /("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?|`(?:\\.|[^`\\])*`?)|(\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$)|--[^\n]*)|(#[^\n]*)|(\b\d[\d_]*(?:\.\d+)?(?:e[+-]?\d+)?\b|\b0x[\da-f]+\b)|([A-Za-z_]\w*)/gi;

export function highlight(code, lang) {
  const out = document.createDocumentFragment();
  const hash = HASH_COMMENTS.has((lang || "").toLowerCase());
  const slashes = !hash || lang === "php";
  let last = 0;
  for (const m of code.matchAll(TOKEN)) {
    let cls = null;
    if (m[1]) cls = "s";
    else if (m[2] && slashes && !(m[2].startsWith("--") && !/^(sql|lua|haskell|hs)$/i.test(lang || ""))) cls = "c";
    else if (m[3] && hash) cls = "c";
    else if (m[4]) cls = "n";
    else if (m[5] && KEYWORDS.has(m[5])) cls = "k";
    if (cls === null) continue;
    if (m.index > last) out.append(code.slice(last, m.index));
    out.append(el("span", `t-${cls}`, m[0]));
    last = m.index + m[0].length;
  }
  if (last < code.length) out.append(code.slice(last));
  return out;
}
