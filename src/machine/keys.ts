/** QEMU `sendkey` names for the characters `sendChars` can type (US layout). */
const SHIFTED: Record<string, string> = {
  "!": "1",
  "@": "2",
  "#": "3",
  $: "4",
  "%": "5",
  "^": "6",
  "&": "7",
  "*": "8",
  "(": "9",
  ")": "0",
  _: "minus",
  "+": "equal",
  "?": "slash",
  ">": "dot",
  "<": "comma",
  ":": "semicolon",
  '"': "apostrophe",
  "|": "backslash",
  "{": "bracket_left",
  "}": "bracket_right",
  "~": "grave_accent",
};

const PLAIN: Record<string, string> = {
  " ": "spc",
  "\n": "ret",
  "\t": "tab",
  "-": "minus",
  "=": "equal",
  "/": "slash",
  ".": "dot",
  ",": "comma",
  ";": "semicolon",
  "'": "apostrophe",
  "\\": "backslash",
  "[": "bracket_left",
  "]": "bracket_right",
  "`": "grave_accent",
};

export function keyFor(ch: string): string {
  if (/^[a-z0-9]$/.test(ch)) return ch;
  if (/^[A-Z]$/.test(ch)) return `shift-${ch.toLowerCase()}`;
  if (PLAIN[ch]) return PLAIN[ch];
  if (SHIFTED[ch]) return `shift-${SHIFTED[ch]}`;
  throw new Error(`sendChars cannot type ${JSON.stringify(ch)} (US keyboard layout)`);
}

/** A QMP `KeyValue`: a QEMU key code name, or a raw scancode. */
export type KeyValue = { type: "qcode"; data: string } | { type: "number"; data: number };

/**
 * A `sendkey` combination ("ctrl-alt-f1", "shift-a", "0x1c") as the keys to press, in order,
 * read as QEMU's human monitor reads it: names joined by "-", "0x…" for a raw scancode.
 */
export function parseKeyCombo(combo: string): KeyValue[] {
  const parts = combo.split("-");
  if (!combo || parts.some((p) => !p)) throw new Error(`${JSON.stringify(combo)} is not a key combination`);
  return parts.map((p) =>
    /^0x[0-9a-f]+$/i.test(p) ? { type: "number", data: Number(p) } : { type: "qcode", data: p },
  );
}
