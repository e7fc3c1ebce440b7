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
