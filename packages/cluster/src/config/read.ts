/**
 * Typed attribute and child-element reading on top of {@link Doc}: every bad value becomes a
 * {@link ConfigError} naming file, line, column and path; unknown names become warnings.
 */
import { isIP } from 'node:net';
import type { Doc, XmlElement } from './xml.js';

/** `VIRTUAL_TO_BE_DEFINED`, `TCP_PORT_TO_BE_DEFINED`, `PROCESS_NAME`: stock-file placeholders. */
export function isPlaceholder(value: string): boolean {
  return /TO_BE_DEFINED/.test(value) || /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/.test(value);
}

/** An IPv4/IPv6 address or a host name (RFC 1123). */
export function isAddressOrHostname(value: string): boolean {
  if (isIP(value) !== 0) return true;
  if (/^[\d.]+$/.test(value)) return false; // looks like IPv4 but is not one (e.g. 198.18.0.300)
  if (value.length > 253) return false;
  return value.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

/** The values of `on`/`off` attributes. */
const BOOL: Record<string, boolean> = { on: true, off: false };

/** Reads the attributes of one element. Unknown attributes are reported when the reader is made. */
export class Attrs {
  readonly #doc: Doc;
  readonly #el: XmlElement;
  readonly #extraNames: string[] = [];

  /**
   * @param known - attributes this loader models.
   * @param tolerated - documented attributes we do not model: kept in {@link Attrs.extra}, no warning.
   */
  constructor(doc: Doc, el: XmlElement, known: readonly string[], tolerated: readonly string[] = []) {
    this.#doc = doc;
    this.#el = el;
    for (const name of el.attrs.keys()) {
      if (known.includes(name)) continue;
      this.#extraNames.push(name);
      if (!tolerated.includes(name)) doc.unknown(el, `unknown attribute '${name}' on <${el.name}>`, name);
    }
  }

  /** Unmodelled attributes (tolerated and unknown ones), or undefined if there are none. */
  extra(): Record<string, string> | undefined {
    if (this.#extraNames.length === 0) return undefined;
    const out: Record<string, string> = {};
    for (const n of this.#extraNames) out[n] = this.#el.attrs.get(n) ?? '';
    return out;
  }

  has(name: string): boolean {
    return this.#el.attrs.has(name);
  }

  #bad(name: string, what: string): never {
    const v = this.#el.attrs.get(name) ?? '';
    return this.#doc.fail(this.#el, 'invalid-value', `${name}="${v}" on <${this.#el.name}>: ${what}`, name, v);
  }

  /** A string attribute; empty strings count as absent for optional ones and are an error for required ones. */
  str(name: string): string | undefined {
    const v = this.#el.attrs.get(name)?.trim();
    return v === undefined || v === '' ? undefined : v;
  }

  required(name: string): string {
    const v = this.str(name);
    if (v === undefined) {
      const why = this.#el.attrs.has(name) ? 'is empty' : 'is missing';
      return this.#doc.fail(this.#el, 'missing', `attribute '${name}' on <${this.#el.name}> ${why}`, this.#el.attrs.has(name) ? name : undefined);
    }
    return v;
  }

  /** `on` / `off`. */
  bool(name: string, def: boolean): boolean {
    const v = this.str(name);
    if (v === undefined) return def;
    const b = BOOL[v.toLowerCase()];
    if (b === undefined) this.#bad(name, 'must be "on" or "off"');
    return b;
  }

  /** One of `values`. */
  oneOf<T extends string>(name: string, values: readonly T[]): T | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (!(values as readonly string[]).includes(v)) this.#bad(name, `must be one of ${values.map((x) => `"${x}"`).join(', ')}`);
    return v as T;
  }

  /** A decimal integer within [min, max]. `what` describes it in errors, e.g. "a number of milliseconds". */
  int(name: string, opts: { min?: number; max?: number; what?: string } = {}): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const min = opts.min ?? 0;
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    const what = opts.what ?? 'an integer';
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    if (!/^-?\d+$/.test(v)) this.#bad(name, `must be ${what} (${range})`);
    const n = Number(v);
    if (n < min || n > max) this.#bad(name, `must be ${what} ${range}`);
    return n;
  }

  /** A TCP/UDP port; a placeholder such as `TCP_PORT_TO_BE_DEFINED` gives a warning and undefined. */
  port(name: string): number | undefined {
    const v = this.str(name);
    if (v !== undefined && isPlaceholder(v)) {
      this.#doc.warn(this.#el, `${name}="${v}" on <${this.#el.name}> is not defined yet (placeholder of the stock file)`, name);
      return undefined;
    }
    return this.int(name, { min: 1, max: 65535, what: 'a port number' });
  }

  /** An IP address or host name; a placeholder gives a warning and is returned as is. */
  addr(name: string): string | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (isPlaceholder(v)) {
      this.#doc.warn(this.#el, `${name}="${v}" on <${this.#el.name}> is not defined yet (placeholder of the stock file)`, name);
      return v;
    }
    if (!isAddressOrHostname(v)) this.#bad(name, 'must be an IP address or a host name');
    return v;
  }
}

/**
 * The child elements of `el`, grouped by name. `known` says which may appear once (`'one'`) or
 * more (`'many'`); `tolerated` names documented elements we do not model (no warning). Others are
 * reported as unknown. Text directly inside `el` is reported too.
 */
export function childrenOf(
  doc: Doc,
  el: XmlElement,
  known: Record<string, 'one' | 'many'>,
  tolerated: readonly string[] = [],
): Map<string, XmlElement[]> {
  const out = new Map<string, XmlElement[]>();
  if (el.text !== '') doc.unknown(el, `unexpected text "${el.text.slice(0, 40)}" inside <${el.name}>`);
  for (const child of el.children) {
    const card = known[child.name];
    if (card === undefined) {
      if (!tolerated.includes(child.name)) doc.unknown(child, `unknown element <${child.name}> inside <${el.name}>`);
      continue;
    }
    const list = out.get(child.name) ?? [];
    if (card === 'one' && list.length > 0) {
      doc.fail(child, 'duplicate', `<${child.name}> may appear only once inside <${el.name}>`);
    }
    list.push(child);
    out.set(child.name, list);
  }
  return out;
}

/** Fails on a name used twice among `items`. */
export function uniqueNames<T>(doc: Doc, items: Array<{ el: XmlElement; name: string; value: T }>, attr: string, what: string): void {
  const seen = new Map<string, XmlElement>();
  for (const it of items) {
    const prev = seen.get(it.name);
    if (prev) {
      const p = doc.loc(prev, attr);
      doc.fail(it.el, 'duplicate', `duplicate ${what} '${it.name}' (first at line ${p.line})`, attr, it.name);
    }
    seen.set(it.name, it.el);
  }
}
