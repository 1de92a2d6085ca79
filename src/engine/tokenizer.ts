// Tokenization through @huggingface/tokenizers (no hand-written BPE), plus what the library
// does not give: each token's bytes and its character span in the input, so the editor can
// tint exactly the text a token covers.
import { Tokenizer } from '@huggingface/tokenizers';
import { EngineError } from './errors';
import type { Token } from '../shared/analysis';
import { bytesLabel } from '../shared/bytes';

export type TokenSpan = Token;

type Scheme = 'bytelevel' | 'sentencepiece' | 'plain';

/** GPT-2's byte ↔ printable-unicode table used by ByteLevel tokenizers. */
function byteLevelDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Map<string, number>();
  bs.forEach((b, i) => map.set(String.fromCodePoint(cs[i]!), b));
  return map;
}

function typesIn(node: unknown, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(node)) node.forEach((n) => typesIn(n, out));
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (typeof o.type === 'string') out.add(o.type);
    for (const v of Object.values(o)) if (v && typeof v === 'object') typesIn(v, out);
  }
  return out;
}

const utf8 = new TextEncoder();
/** Texts from this long on are remembered by encodeIds (shorter ones encode in well under a millisecond). */
const MEMO_MIN_CHARS = 4096;
/** A SentencePiece byte-fallback piece, e.g. <0xE6>. */
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class TextTokenizer {
  private readonly tok: Tokenizer;
  private readonly scheme: Scheme;
  private readonly byteMap = byteLevelDecoder();
  private readonly specialIds = new Set<number>();
  private readonly bytesCache = new Map<number, Uint8Array>();
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: number[];

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>) {
    const model = tokenizerJson.model as Record<string, unknown> | undefined;
    if (!model || typeof model !== 'object') throw new EngineError('BAD_TOKENIZER', 'tokenizer.json has no "model" section.');
    const maxId = validateIds(tokenizerJson, model);
    try {
      this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
      this.tok.encode('probe');
    } catch (e) {
      throw new EngineError('BAD_TOKENIZER', `tokenizer.json could not be loaded: ${(e as Error).message}`);
    }
    const types = typesIn([tokenizerJson.pre_tokenizer, tokenizerJson.decoder]);
    if (types.has('ByteLevel')) this.scheme = 'bytelevel';
    else if (model.byte_fallback === true || types.has('Metaspace') || types.has('ByteFallback') || types.has('Replace'))
      this.scheme = 'sentencepiece';
    else this.scheme = 'plain';
    // Byte-fallback pieces (<0xNN>) stand for text even when a file lists them as special added tokens.
    const byteFallback = model.byte_fallback === true;
    for (const [id, t] of this.tok.get_added_tokens_decoder())
      if (t.special && !(byteFallback && BYTE_PIECE.test(t.content))) this.specialIds.add(id);
    this.vocabSize = maxId + 1;
    const idOf = (v: unknown): number | null => {
      const content = typeof v === 'string' ? v : v && typeof v === 'object' ? (v as { content?: unknown }).content : undefined;
      return typeof content === 'string' ? (this.tok.token_to_id(content) ?? null) : null;
    };
    this.bosId = idOf(tokenizerConfig.bos_token);
    const eos = idOf(tokenizerConfig.eos_token);
    this.eosIds = eos === null ? [] : [eos];
    this.addBos = flag(tokenizerConfig, 'add_bos_token', 'bos_token', this.bosId);
    this.addEos = flag(tokenizerConfig, 'add_eos_token', 'eos_token', eos);
  }

  /**
   * tokenizer_config.json's add_bos_token / add_eos_token, when given: transformers rebuilds the
   * post-processor from them (Llama, Gemma, Mistral tokenizers), so they win over tokenizer.json's.
   */
  private readonly addBos: boolean | undefined;
  private readonly addEos: boolean | undefined;

  private longestPiece: number | undefined;

  /**
   * The most characters one token can stand for: its vocabulary's longest piece (a byte-level
   * piece has one character per byte, a SentencePiece byte piece <0xNN> six), so an upper bound.
   * Counted once, on first use.
   */
  maxTokenChars(): number {
    if (this.longestPiece === undefined) {
      let m = 1;
      for (let id = 0; id < this.vocabSize; id++) m = Math.max(m, this.tok.id_to_token(id)?.length ?? 0);
      this.longestPiece = m;
    }
    return this.longestPiece;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  piece(id: number): string {
    return this.tok.id_to_token(id) ?? `<${id}>`;
  }

  /** The bytes a token stands for in the text. */
  tokenBytes(id: number): Uint8Array {
    const hit = this.bytesCache.get(id);
    if (hit) return hit;
    const piece = this.piece(id);
    let bytes: Uint8Array;
    if (this.specialIds.has(id)) bytes = utf8.encode(piece);
    else if (this.scheme === 'bytelevel') {
      const out: number[] = [];
      for (const ch of piece) {
        const b = this.byteMap.get(ch);
        if (b === undefined) out.push(...utf8.encode(ch));
        else out.push(b);
      }
      bytes = Uint8Array.from(out);
    } else if (this.scheme === 'sentencepiece') {
      const m = BYTE_PIECE.exec(piece);
      bytes = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(piece.replace(/\u2581/g, ' '));
    } else bytes = utf8.encode(piece);
    this.bytesCache.set(id, bytes);
    return bytes;
  }

  /** The token's text for display and exports: bytes that are not a whole character as <0xHH> (bytesLabel). */
  tokenText(id: number): string {
    return bytesLabel(this.tokenBytes(id));
  }

  /** The text of `ids`; `skipSpecial`: without the special tokens (BOS…) the tokenizer added. */
  decode(ids: number[], skipSpecial = false): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: skipSpecial });
  }

  /**
   * The last long text encoded and its ids: Compare Completions encodes the same prompt for each
   * of its columns, a what-if re-run the same text again.
   */
  private lastLong: { text: string; special: boolean; ids: readonly number[] } | null = null;

  /** ids for `text`, with special tokens (BOS…) added as the tokenizer's post-processor says. */
  encodeIds(text: string, addSpecialTokens = true): number[] {
    const memo = this.lastLong;
    if (memo && memo.special === addSpecialTokens && memo.text === text) return [...memo.ids];
    const ids = this.encodeIdsUncached(text, addSpecialTokens);
    if (text.length >= MEMO_MIN_CHARS) this.lastLong = { text, special: addSpecialTokens, ids: [...ids] };
    return ids;
  }

  private encodeIdsUncached(text: string, addSpecialTokens: boolean): number[] {
    let ids: number[];
    try {
      ids = this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    } catch (e) {
      throw new EngineError('BAD_TOKENIZER', `The tokenizer failed on this text: ${(e as Error).message}`);
    }
    if (!addSpecialTokens) return ids;
    const bos = this.bosId;
    if (this.addBos !== undefined && bos !== null && (ids[0] === bos) !== this.addBos) ids = this.addBos ? [bos, ...ids] : ids.slice(1);
    const eos = this.eosIds[0];
    if (this.addEos !== undefined && eos !== undefined && (ids.at(-1) === eos) !== this.addEos)
      ids = this.addEos ? [...ids, eos] : ids.slice(0, -1);
    return ids;
  }

  encode(text: string, addSpecialTokens = true): TokenSpan[] {
    return this.spans(text, this.encodeIds(text, addSpecialTokens));
  }

  /** Character spans of `ids` in `text` (ids must come from encoding `text`). */
  spans(text: string, ids: number[]): TokenSpan[] {
    return alignTokens(
      text,
      ids.map((id) => ({ id, bytes: this.tokenBytes(id), special: this.specialIds.has(id) })),
    ).map((s, i) => ({
      id: ids[i]!,
      text: this.tokenText(ids[i]!),
      start: s.start,
      end: s.end,
      special: this.specialIds.has(ids[i]!),
    }));
  }
}

/** A tokenizer_config.json switch (add_bos_token …): undefined when absent; refused when unusable. */
function flag(config: Record<string, unknown>, key: string, tokenKey: string, tokenId: number | null): boolean | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean')
    throw new EngineError(
      'BAD_TOKENIZER',
      `tokenizer_config.json: "${key}" must be true or false, got ${JSON.stringify(v)?.slice(0, 40)}.`,
    );
  if (v && tokenId === null)
    throw new EngineError('BAD_TOKENIZER', `tokenizer_config.json sets "${key}": true but "${tokenKey}" names no token of tokenizer.json.`);
  return v;
}

/** Largest vocabulary accepted (real tokenizers have at most a few hundred thousand entries). */
const MAX_VOCAB = 4_000_000;

/**
 * Token ids must be integers that index a plausible vocabulary: a mutated or hostile file with
 * id 10^9 would otherwise make the tokenizer library allocate a table that large.
 */
function validateIds(json: Record<string, unknown>, model: Record<string, unknown>): number {
  // Counted in place (no per-entry arrays): this runs on every model load, on 50k-250k entries.
  let count = 0;
  let max = -1;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    count = vocab.length;
    max = vocab.length - 1;
  } else if (vocab && typeof vocab === 'object') {
    const table = vocab as Record<string, unknown>;
    for (const piece in table) {
      const id = table[piece];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) {
        throw new EngineError(
          'BAD_TOKENIZER',
          `tokenizer.json: token ${JSON.stringify(piece.slice(0, 40))} has an invalid id ${JSON.stringify(id)?.slice(0, 40)}.`,
        );
      }
      count++;
      if (id > max) max = id;
    }
  } else if (vocab !== undefined) throw new EngineError('BAD_TOKENIZER', 'tokenizer.json: "model.vocab" must be an object or a list.');
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new EngineError('BAD_TOKENIZER', 'tokenizer.json: "added_tokens" must be a list.');
    for (const t of added) {
      const id = (t as { id?: unknown })?.id;
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) {
        throw new EngineError('BAD_TOKENIZER', `tokenizer.json: an added token has an invalid id ${JSON.stringify(id)?.slice(0, 40)}.`);
      }
      count++;
      if (id > max) max = id;
    }
  }
  // ids may have small gaps, but not a table mostly made of holes
  if (max >= 2 * count + 1024) {
    throw new EngineError('BAD_TOKENIZER', `tokenizer.json: token id ${max} is far beyond the ${count} tokens it defines.`);
  }
  return max;
}

function startsWithAt(hay: Uint8Array, at: number, needle: Uint8Array, from = 0): boolean {
  if (at + needle.length - from > hay.length) return false;
  for (let i = from; i < needle.length; i++) if (hay[at + i - from] !== needle[i]) return false;
  return true;
}

/**
 * Maps token byte strings onto the text. Tolerates what tokenizers add (a BOS that is not
 * in the text, SentencePiece's dummy-prefix space) and falls back to byte lengths where a
 * normalizer changed the text.
 */
export function alignTokens(text: string, tokens: { bytes: Uint8Array; special: boolean }[]): { start: number; end: number }[] {
  const tb = utf8.encode(text);
  // UTF-16 index of the character each byte belongs to, and where that character ends.
  const charStart = new Int32Array(tb.length + 1);
  const charEnd = new Int32Array(tb.length + 1);
  let b = 0;
  let u = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    for (let i = 0; i < n; i++) {
      charStart[b + i] = u;
      charEnd[b + i] = u + ch.length;
    }
    b += n;
    u += ch.length;
  }
  charStart[tb.length] = u;
  charEnd[tb.length] = u;
  const toStart = (byte: number) => charStart[Math.min(byte, tb.length)]!;
  const toEnd = (byteEnd: number) => (byteEnd <= 0 ? 0 : charEnd[Math.min(byteEnd, tb.length) - 1]!);

  const out: { start: number; end: number }[] = [];
  let bp = 0;
  for (const t of tokens) {
    let from = 0;
    if (startsWithAt(tb, bp, t.bytes)) from = 0;
    else if (t.special) {
      out.push({ start: toStart(bp), end: toStart(bp) });
      continue;
    } else if (t.bytes[0] === 0x20 && tb[bp] !== 0x20 && startsWithAt(tb, bp, t.bytes, 1)) from = 1;
    const len = Math.max(0, t.bytes.length - from);
    const end = Math.min(tb.length, bp + len);
    out.push({ start: len === 0 ? toStart(bp) : toStart(bp), end: len === 0 ? toStart(bp) : toEnd(end) });
    bp = end;
  }
  return out;
}
