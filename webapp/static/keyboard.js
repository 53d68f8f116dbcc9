// Keyboard-first labeling (webapp/keyboard.py builds the chips and the legend this drives).
//
// The "focused attribute" is this script's own, drawn as a blue outline: it is not the browser's
// focus, so the number keys work without clicking anywhere. Keys act only on the Label tab and
// never while the seller types in a text field (a dropdown's search, the My products search box);
// Escape leaves such a field, Ctrl+Enter works from anywhere.
(() => {
  if (window.vtKeyboard) return;
  const SLOT = 'vt-slot-';
  const state = { slot: null, product: null };
  // Picks and copies on their way into the form: "save" waits for them, or it would send the old
  // values (a chip sets its dropdown one event later; a copy is a round trip to the server).
  const pending = new Map(); // what -> deadline (ms)
  const settled = () => {
    const now = Date.now();
    for (const [what, deadline] of pending) if (deadline < now) pending.delete(what);
    return pending.size === 0;
  };

  const typing = (el) => {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    if (el.tagName !== 'INPUT') return false;
    const type = (el.getAttribute('type') || 'text').toLowerCase();
    return !['radio', 'checkbox', 'button', 'submit', 'range', 'file', 'color'].includes(type);
  };
  const shown = (el) => el !== null && el.offsetParent !== null;
  const byId = (id) => document.getElementById(id);
  // The indices of the attribute slots the form shows now, in order (none outside the Label tab).
  const slots = () =>
    [...document.querySelectorAll(`[id^="${SLOT}"]`)]
      .filter(shown)
      .map((el) => Number(el.id.slice(SLOT.length)))
      .sort((a, b) => a - b);
  const chipsOf = (i) => byId(`vt-chips-${i}`);
  const chipLabels = (i) => {
    const box = chipsOf(i);
    return box ? [...box.querySelectorAll('label')] : [];
  };
  const productShown = () => {
    const summary = byId('vt-summary');
    const match = summary && summary.textContent.match(/Product (\d+)/);
    return match ? match[1] : null;
  };
  const status = (text) => {
    const el = byId('vt-kbd-status');
    if (el) el.textContent = text;
  };

  // A new product starts at its first attribute; a slot that went away gives way to the first.
  const current = () => {
    const visible = slots();
    const product = productShown();
    if (product !== state.product) {
      state.product = product;
      state.slot = visible.length ? visible[0] : null;
      status('');
      // The button that brought this product (Upload, a batch row) or a field's search left open
      // lets go, so the keys are the form's.
      const active = document.activeElement;
      const release = active && active !== document.body && (!typing(active) || active.closest(`[id^="${SLOT}"]`));
      if (product !== null && release) active.blur();
    }
    if (!visible.includes(state.slot)) state.slot = visible.length ? visible[0] : null;
    return visible;
  };

  const style = document.createElement('style');
  style.id = 'vt-kbd-focus';
  let drawn = '';
  const draw = () => {
    current();
    const i = state.slot;
    const css =
      i === null
        ? ''
        : `#vt-attr-${i} { outline: 3px solid #2563eb; outline-offset: 1px; background: #eff6ff; }\n` +
          `#${SLOT}${i} [data-testid="block-info"]::before { content: "▶ "; color: #2563eb; }`;
    if (css !== drawn) {
      drawn = css;
      style.textContent = css;
    }
  };

  const move = (step) => {
    const visible = current();
    if (!visible.length) return;
    const at = Math.max(0, visible.indexOf(state.slot));
    state.slot = visible[Math.min(visible.length - 1, Math.max(0, at + step))];
    draw();
    const el = byId(`${SLOT}${state.slot}`);
    if (el) el.scrollIntoView({ block: 'nearest' });
  };

  // Chip n (1-9) of the focused attribute, or its last chip ("not applicable") for 0.
  const pick = (n) => {
    current();
    if (state.slot === null) return false;
    const labels = chipLabels(state.slot);
    if (!labels.length) return false;
    const numbered = labels.slice(0, -1);
    const label = n === 0 ? labels[labels.length - 1] : numbered[n - 1];
    if (!label) {
      status(`no chip ${n} here: / searches all values`);
      return false;
    }
    if (!label.classList.contains('selected')) pending.set(`slot-${state.slot}`, Date.now() + 2000);
    label.click(); // the radio's own input event sets the dropdown (keyboard.wire)
    status('');
    return true;
  };

  // Enter: every attribute the model is sure of (its chips carry vt-sure) keeps or gets the model's
  // top value; an attribute the seller emptied gets it back. Then the first unsure one is focused.
  const acceptSure = () => {
    const visible = current();
    let accepted = 0;
    let unsure = null;
    for (const i of visible) {
      const box = chipsOf(i);
      if (!box) continue;
      const sure = box.classList.contains('vt-sure') || box.querySelector('.vt-sure') !== null;
      if (!sure) {
        if (unsure === null) unsure = i;
        continue;
      }
      const labels = chipLabels(i);
      const input = document.querySelector(`#${SLOT}${i} input`);
      const empty = !input || input.value.trim() === '';
      if (empty && labels.length > 1) labels[0].click();
      accepted += 1;
    }
    if (unsure !== null) {
      state.slot = unsure;
      draw();
    }
    const left = visible.filter((i) => {
      const box = chipsOf(i);
      return box && !(box.classList.contains('vt-sure') || box.querySelector('.vt-sure'));
    }).length;
    status(`accepted ${accepted} sure field(s)` + (left ? `; ${left} to check` : '; Ctrl+Enter saves'));
  };

  const press = (id) => {
    const button = byId(id);
    if (!button) return false;
    button.click();
    return true;
  };
  const saveNext = () => {
    if (!byId('vt-save-next')) return false;
    const go = () => (settled() ? press('vt-save-next') : setTimeout(go, 20));
    go();
    return true;
  };
  // A copy is in once its message changes (keyboard.copied_message), or after 3 s at most (the
  // same message again).
  let beforeCopy = null;
  const message = () => (byId('vt-save-msg')?.textContent || '').trim();
  const copy = (id) => {
    beforeCopy = message();
    if (press(id)) pending.set('copy', Date.now() + 3000);
  };

  // Clicking or typing in an attribute's dropdown or chips makes it the focused one.
  let released = null; // a field's search that Enter has just closed
  const letGo = (input) => {
    if (released !== input) return;
    released = null;
    input.blur();
  };
  document.addEventListener('focusin', (e) => {
    if (e.target !== released) released = null;
    const el = e.target.closest && e.target.closest(`[id^="${SLOT}"], [id^="vt-chips-"]`);
    if (!el) return;
    const i = Number(el.id.replace(/^vt-(slot|chips)-/, ''));
    if (!Number.isNaN(i)) {
      state.slot = i;
      draw();
    }
  });

  window.addEventListener(
    'keydown',
    (e) => {
      if (e.defaultPrevented || e.isComposing || ['Control', 'Shift', 'Alt', 'Meta'].includes(e.key)) return;
      const active = document.activeElement;
      if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
        // Not for a field's search too: it would take Enter as a pick again and undo the last one.
        if (saveNext()) {
          e.preventDefault();
          e.stopPropagation();
        }
        return;
      }
      // A key right after a search's Enter is the form's again, though the search keeps the browser's
      // focus until its value is in (blurring it sooner would undo the pick).
      const searching = typing(active) && active !== released;
      if (searching) {
        const field = active.closest(`[id^="${SLOT}"]`);
        // Escape leaves a dropdown's search for the keys again (Gradio closes its list first).
        if (e.key === 'Escape' && field) setTimeout(() => active.blur(), 0);
        // Enter takes the search's option and gives the keys back; a save right after it waits for
        // the value to arrive (or 1 s: it was the same value).
        if (e.key === 'Enter' && field) {
          pending.set(`slot-${field.id.slice(SLOT.length)}`, Date.now() + 1000);
          released = active;
          setTimeout(() => letGo(active), 1000); // the same value again: no change comes
        }
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const visible = current();
      if (!visible.length || !shown(byId('vt-save-next'))) return; // not on the Label tab
      const inForm =
        !active || active === document.body || active === released || active.closest('[id^="vt-chips-"]') !== null;
      let handled = true;
      if (e.key === 'ArrowDown' || (e.key === 'Tab' && !e.shiftKey && inForm)) move(1);
      else if (e.key === 'ArrowUp' || (e.key === 'Tab' && e.shiftKey && inForm)) move(-1);
      else if (/^[0-9]$/.test(e.key)) {
        if (pick(Number(e.key))) move(1);
      } else if (e.key === 'Enter' && inForm) acceptSure();
      else if (e.key === '/') {
        const input = document.querySelector(`#${SLOT}${state.slot} input`);
        if (input) {
          input.focus();
          input.select();
        }
      } else if (e.key === 'c') copy('vt-copy-previous');
      else if (e.key === 's') press('vt-skip');
      else if (e.key === 'm') press('vt-copy-similar'); // another helper's button: nothing when absent
      else if (e.key === 'Escape' && active === released) letGo(active);
      else handled = false;
      if (!handled && active === released) released = null; // typing in the search again
      if (handled) {
        e.preventDefault();
        e.stopPropagation();
      }
    },
    true, // capture: before a focused radio moves its own selection with the arrows
  );

  const start = () => {
    document.head.appendChild(style);
    let queued = false;
    new MutationObserver(() => {
      if (pending.has('copy') && message() !== beforeCopy) pending.delete('copy');
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        draw();
      });
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
    draw();
  };
  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start);
  // keyboard.wire's dropdown.change calls this: the chip picked for slot i has reached its dropdown.
  const applied = (i) => {
    pending.delete(`slot-${i}`);
    if (released && released.closest(`#${SLOT}${i}`)) setTimeout(() => released && letGo(released), 0);
  };
  window.vtKeyboard = { state, slots, pick, move, acceptSure, applied };
})();
