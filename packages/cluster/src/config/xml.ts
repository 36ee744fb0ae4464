/**
 * XML reading shared by the userconfig.xml and cluster.xml loaders: syntax checks with positions,
 * a plain element tree with the source offset of every element, and a {@link Doc} that reads
 * attributes with line/column-precise errors and records warnings.
 *
 * Element positions come from fast-xml-parser's `captureMetaData` option (v5): every element
 * node carries `startIndex`, the offset of its `<` in the original text (CRLF-aware). Attribute
 * positions are found by scanning that element's start tag.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ConfigError, type ConfigErrorReason, type ConfigLocation, type ConfigWarning } from './errors.js';

/** One element of the parsed document. */
export interface XmlElement {
  name: string;
  /** Attributes in document order. */
  attrs: Map<string, string>;
  children: XmlElement[];
  /** Non-blank text directly inside the element, trimmed and joined. */
  text: string;
  /** Offset of `<` in the source. */
  start: number;
  /** e.g. `safe/service/rfs/replicated[2]` */
  path: string;
}

/** Quote characters that look like `"` or `'` but are not XML quotes. */
const TYPOGRAPHIC_QUOTES = new Set([
  '\u2018', '\u2019', '\u201A', '\u201B', // ‘ ’ ‚ ‛
  '\u201C', '\u201D', '\u201E', '\u201F', // “ ” „ ‟
  '\u2032', '\u2033', '\u2034', '\u2035', '\u2036', '\u2037', // ′ ″ ‴ ‵ ‶ ‷
  '\u00AB', '\u00BB', '\u2039', '\u203A', // « » ‹ ›
  '\uFF02', '\uFF07', '\u00B4', '\u02BC', '\u02EE', '\u301D', '\u301E', // ＂ ＇ ´ ʼ ˮ 〝 〞
]);

/** Line/column of offsets in a text. */
export class LineIndex {
  readonly #starts: number[] = [0];
  constructor(text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.#starts.push(i + 1);
  }
  at(offset: number): { line: number; column: number } {
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#starts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (this.#starts[lo] ?? 0) + 1 };
  }
}

function hex(ch: string): string {
  return 'U+' + (ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
}

/**
 * Finds typographic quotes used where XML expects `"` or `'` (inside start tags, outside a
 * straight-quoted value): the usual result of pasting a configuration from a web page. Done before
 * the generic validator, whose message for this ("attribute without value") does not help.
 */
function findTypographicQuote(src: string): { offset: number; ch: string; attr?: string; tag: string; path: string } | undefined {
  let i = 0;
  const open: string[] = []; // names of the enclosing elements, for the path in the message
  const n = src.length;
  while (i < n) {
    const lt = src.indexOf('<', i);
    if (lt < 0) return undefined;
    if (src.startsWith('<!--', lt)) {
      const end = src.indexOf('-->', lt + 4);
      i = end < 0 ? n : end + 3;
      continue;
    }
    if (src.startsWith('<![CDATA[', lt)) {
      const end = src.indexOf(']]>', lt + 9);
      i = end < 0 ? n : end + 3;
      continue;
    }
    if (src.startsWith('<?', lt)) {
      const end = src.indexOf('?>', lt + 2);
      i = end < 0 ? n : end + 2;
      continue;
    }
    if (src.startsWith('<!', lt)) {
      // <!DOCTYPE ...> possibly with an internal subset [...]
      let depth = 0;
      let j = lt + 2;
      for (; j < n; j++) {
        const c = src[j];
        if (c === '[') depth++;
        else if (c === ']') depth--;
        else if (c === '>' && depth <= 0) break;
      }
      i = j + 1;
      continue;
    }
    // A start or end tag: scan to its '>' outside straight quotes.
    const tagMatch = /^<\/?([^\s/>]*)/.exec(src.slice(lt, lt + 200));
    const tag = tagMatch?.[1] ?? '';
    let quote: string | undefined;
    let lastName: string | undefined;
    let afterEquals = false;
    let j = lt + 1 + (tagMatch?.[0].length ?? 1) - 1;
    for (; j < n; j++) {
      const c = src[j] as string;
      if (quote !== undefined) {
        if (c === quote) quote = undefined;
        continue;
      }
      if (c === '"' || c === "'") {
        quote = c;
        afterEquals = false;
        continue;
      }
      if (c === '>') break;
      if (TYPOGRAPHIC_QUOTES.has(c)) {
        const path = [...open, tag].join('/');
        return { offset: j, ch: c, tag, path, ...(lastName !== undefined ? { attr: lastName } : {}) };
      }
      if (c === '=') {
        afterEquals = true;
        continue;
      }
      if (/\s/.test(c)) continue;
      if (!afterEquals) {
        const m = /^[^\s=/>"']+/.exec(src.slice(j, j + 200));
        if (m) {
          lastName = m[0];
          j += m[0].length - 1;
        }
      }
    }
    if (src[lt + 1] === '/') open.pop();
    else if (src[j - 1] !== '/') open.push(tag);
    i = j + 1;
  }
  return undefined;
}

type FxpNode = Record<string, unknown>;

const META = XMLParser.getMetaDataSymbol() as unknown as symbol;

/** Parsed, position-aware document plus the reporting helpers the loaders use. */
export class Doc {
  readonly file: string;
  readonly strict: boolean;
  readonly warnings: ConfigWarning[] = [];
  readonly root: XmlElement;
  readonly #src: string;
  readonly #lines: LineIndex;

  /** Parses `src`; throws {@link ConfigError} on typographic quotes and on malformed XML. */
  constructor(src: string, opts: { file: string; strict?: boolean }) {
    this.file = opts.file;
    this.strict = opts.strict ?? false;
    // A byte-order mark would shift column 1 of line 1; replace it with a space so offsets stay the same.
    this.#src = src.charCodeAt(0) === 0xfeff ? ' ' + src.slice(1) : src;
    this.#lines = new LineIndex(this.#src);

    const tq = findTypographicQuote(this.#src);
    if (tq) {
      const what = tq.attr !== undefined ? `attribute value of '${tq.attr}' on <${tq.tag}>` : `start tag <${tq.tag}>`;
      this.#throwAt(tq.offset, tq.path, 'typographic-quote',
        `${what} uses a typographic quote (${hex(tq.ch)} ${tq.ch}); use straight quotes " or '`,
        { ...(tq.attr !== undefined ? { attribute: tq.attr } : {}), value: tq.ch });
    }

    const valid = XMLValidator.validate(this.#src, { allowBooleanAttributes: false });
    if (valid !== true) {
      const line = valid.err.line ?? 1;
      const col = valid.err.col ?? 1;
      const loc = { file: this.file, line, column: col, path: '' };
      throw new ConfigError(`${this.file}:${line}:${col}: malformed XML: ${valid.err.msg}`, { ...loc, reason: 'syntax' });
    }

    const parser = new XMLParser({
      preserveOrder: true,
      ignoreAttributes: false,
      attributeNamePrefix: '',
      parseAttributeValue: false,
      parseTagValue: false,
      trimValues: false, // keep attribute values as written; text is trimmed in #convert
      captureMetaData: true,
      ignoreDeclaration: true,
      ignorePiTags: true,
      processEntities: true,
      htmlEntities: false,
    });
    const nodes = parser.parse(this.#src) as FxpNode[];
    const roots = this.#convert(nodes, '');
    const root = roots[0];
    if (root === undefined) {
      const loc = { file: this.file, line: 1, column: 1, path: '' };
      throw new ConfigError(`${this.file}:1:1: the file has no root element`, { ...loc, reason: 'syntax' });
    }
    const second = roots[1];
    if (second !== undefined) this.#throwAt(second.start, second.path, 'syntax', `only one root element is allowed; <${second.name}> follows <${root.name}>`);
    this.root = root;
  }

  #convert(nodes: FxpNode[], parentPath: string): XmlElement[] {
    const out: XmlElement[] = [];
    const names = nodes.map((n) => Object.keys(n).find((k) => k !== ':@'));
    const counts = new Map<string, number>();
    for (const k of names) if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
    const seen = new Map<string, number>();
    for (const node of nodes) {
      const name = Object.keys(node).find((k) => k !== ':@');
      if (name === undefined || name === '#text' || name === '#comment' || name === '__cdata' || name.startsWith('?')) continue;
      const nth = (seen.get(name) ?? 0) + 1;
      seen.set(name, nth);
      const path = (parentPath ? parentPath + '/' : '') + name + ((counts.get(name) ?? 0) > 1 ? `[${nth}]` : '');
      const rawAttrs = (node[':@'] ?? {}) as Record<string, unknown>;
      const attrs = new Map<string, string>();
      for (const [k, v] of Object.entries(rawAttrs)) attrs.set(k, String(v));
      const kids = (Array.isArray(node[name]) ? node[name] : []) as FxpNode[];
      const text = kids
        .filter((k) => '#text' in k)
        .map((k) => String(k['#text']).trim())
        .filter((t) => t !== '')
        .join(' ');
      const meta = (node as Record<symbol, unknown>)[META] as { startIndex?: number } | undefined;
      out.push({ name, attrs, children: this.#convert(kids, path), text, start: meta?.startIndex ?? 0, path });
    }
    return out;
  }

  /** Location of an element, or of one of its attributes (the attribute's name) when `attr` is given. */
  loc(el: XmlElement, attr?: string): ConfigLocation {
    let offset = el.start;
    if (attr !== undefined) {
      const found = this.#attrOffset(el, attr);
      if (found !== undefined) offset = found;
    }
    return { file: this.file, ...this.#lines.at(offset), path: el.path };
  }

  #attrOffset(el: XmlElement, attr: string): number | undefined {
    // The start tag runs from el.start to the first '>' outside quotes.
    let end = el.start;
    let quote: string | undefined;
    for (; end < this.#src.length; end++) {
      const c = this.#src[end];
      if (quote !== undefined) {
        if (c === quote) quote = undefined;
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    const tag = this.#src.slice(el.start, end);
    const escaped = attr.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const m = new RegExp(`\\s(${escaped})\\s*=`).exec(tag);
    return m ? el.start + m.index + 1 : undefined;
  }

  #throwAt(offset: number, path: string, reason: ConfigErrorReason, message: string, extra: { attribute?: string; value?: string } = {}): never {
    const loc = { file: this.file, ...this.#lines.at(offset), path };
    const where = path ? ` (at ${path})` : '';
    throw new ConfigError(`${loc.file}:${loc.line}:${loc.column}: ${message}${where}`, { ...loc, reason, ...extra });
  }

  /** Throws a {@link ConfigError} located at `el` (or its attribute `attr`). */
  fail(el: XmlElement, reason: ConfigErrorReason, message: string, attr?: string, value?: string): never {
    const loc = this.loc(el, attr);
    throw new ConfigError(`${loc.file}:${loc.line}:${loc.column}: ${message} (at ${loc.path})`, {
      ...loc,
      reason,
      ...(attr !== undefined ? { attribute: attr } : {}),
      ...(value !== undefined ? { value } : {}),
    });
  }

  warn(el: XmlElement, message: string, attr?: string): void {
    this.warnings.push({ ...this.loc(el, attr), message });
  }

  /** Unknown element or attribute: a warning, or an error with `strict`. */
  unknown(el: XmlElement, message: string, attr?: string): void {
    if (this.strict) this.fail(el, 'unknown', message, attr);
    this.warn(el, message, attr);
  }
}
