/**
 * Duplicate keys in JSON text. `JSON.parse` keeps the last of two equal keys silently; readers of
 * formats that forbid duplicates (safetensors headers) ask {@linkcode duplicateTopLevelKey} first.
 * @module
 */

/**
 * The first key that appears twice among the top-level keys of the JSON object in `text`, or null.
 * `text` must be valid JSON (parse it first); keys are compared after unescaping (`"\u0077"` is `"w"`),
 * and keys of nested objects are not top-level keys.
 */
export function duplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let atKey = false; // the next string at depth 1 is a key
  let inObject = false; // the top-level value is an object
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && atKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        atKey = false;
      }
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      if (depth === 1) inObject = atKey = c === "{";
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1 && inObject) {
      atKey = true;
    }
  }
  return null;
}
