// Token texts and the bytes they stand for. The engine writes a byte that is not part of a whole,
// valid UTF-8 character as <0xHH> (SentencePiece's name for a byte piece: bytesLabel); the panel
// reads those bytes back to show which character a run of byte pieces spells (labelBytes).

/** The length of the valid UTF-8 character at bytes[i] (1–4), or 0 when none starts there. */
export function utf8CharLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  const cont = (j: number, lo = 0x80, hi = 0xbf) => j < bytes.length && bytes[j]! >= lo && bytes[j]! <= hi;
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    // no overlong forms (E0 A0..), no surrogates (ED ..9F)
    const [lo, hi] = b === 0xe0 ? [0xa0, 0xbf] : b === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    // no overlong forms (F0 90..), nothing above U+10FFFF (F4 ..8F)
    const [lo, hi] = b === 0xf0 ? [0x90, 0xbf] : b === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/** The code point of the valid character of length n at bytes[i]. */
function codePointAt(bytes: Uint8Array, i: number, n: number): number {
  let cp = n === 1 ? bytes[i]! : bytes[i]! & (0xff >> (n + 1));
  for (let j = 1; j < n; j++) cp = (cp << 6) | (bytes[i + j]! & 0x3f);
  return cp;
}

/**
 * A token's bytes as text: UTF-8 characters as themselves, every byte that is not part of a whole,
 * valid UTF-8 character as <0xHH>. A character split across tokens (CJK, emoji, accented letters
 * in byte-level vocabularies) then shows which bytes each token holds — `"<0xE6><0x97>"`,
 * `" <0xF0>"` — where a lossy decode gives U+FFFD for all of them.
 */
export function bytesLabel(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const n = utf8CharLength(bytes, i);
    if (n === 0) {
      out += `<0x${bytes[i]!.toString(16).toUpperCase().padStart(2, '0')}>`;
      i++;
    } else {
      out += String.fromCodePoint(codePointAt(bytes, i, n));
      i += n;
    }
  }
  return out;
}

export const BYTE_LABEL = /<0x([0-9A-F]{2})>/;
const BYTE_LABEL_SPLIT = /(<0x[0-9A-F]{2}>)/;
const utf8 = new TextEncoder();

/** The bytes a token text stands for: the inverse of bytesLabel. */
export function labelBytes(text: string): Uint8Array {
  const out: number[] = [];
  // split with a capture: the labels are the odd parts
  text.split(BYTE_LABEL_SPLIT).forEach((part, k) => {
    if (k % 2 === 1) out.push(parseInt(part.slice(3, 5), 16));
    else for (const b of utf8.encode(part)) out.push(b);
  });
  return Uint8Array.from(out);
}

/**
 * The characters that token i of a sequence (token texts, as bytesLabel writes them) holds a part
 * of and shares with its neighbours — what a run of byte pieces spells, e.g. ["<0xE6><0x97>",
 * "<0xA5>"] → "日" for either token. Empty when token i splits no character, or when the
 * character is not complete in the sequence (a generation cut mid-character).
 */
export function splitCharacters(texts: readonly string[], i: number): string {
  if (!BYTE_LABEL.test(texts[i] ?? '')) return '';
  // a character is at most 4 bytes, so at most 3 tokens on either side share it
  const from = Math.max(0, i - 3);
  const parts = texts.slice(from, i + 4).map(labelBytes);
  const bytes = Uint8Array.from(parts.flatMap((p) => [...p]));
  let start = 0;
  for (let j = from; j < i; j++) start += parts[j - from]!.length;
  const end = start + parts[i - from]!.length;
  let out = '';
  for (let at = 0; at < bytes.length && at < end;) {
    const n = utf8CharLength(bytes, at) || 1;
    // a whole character that begins before token i's bytes end and ends after they begin, and
    // is not inside token i alone
    if (n > 1 && at + n > start && (at < start || at + n > end)) out += String.fromCodePoint(codePointAt(bytes, at, n));
    at += n;
  }
  return out;
}
