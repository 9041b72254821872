// What the robot reads of a page, run inside it over WebDriver (src/form/session.rs).
// Read-only: nothing here changes the page, marks an element or calls the site, so a script
// of the site sees nothing but a visitor. Every function returns plain JSON; elements are
// named by their position in document.querySelectorAll(CONTROLS or BUTTONS), which WebDriver's
// find_all returns in the same order.
const CONTROLS = 'input, textarea, select';
const BUTTONS = 'button, input[type=submit], input[type=button], input[type=image], [role=button], a[href]';
const M = {
  txt(n) {
    if (!n) return '';
    const t = (n.innerText !== undefined && n.isConnected) ? n.innerText : n.textContent;
    return (t || '').replace(/\s+/g, ' ').trim();
  },
  // The text of a label without the options of a select or a textarea it wraps.
  labelText(l) {
    const c = l.cloneNode(true);
    c.querySelectorAll('select, textarea, option, script, style').forEach(x => x.remove());
    return (c.textContent || '').replace(/\s+/g, ' ').trim();
  },
  shown(el) {
    if (!el || !el.isConnected) return false;
    if (el.type === 'hidden') return false;
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.display === 'none' || s.visibility === 'hidden' || s.visibility === 'collapse') return false;
      if (parseFloat(s.opacity) === 0) return false;
      if (n.getAttribute('aria-hidden') === 'true') return false;
      if (n.hidden) return false;
    }
    const r = el.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) return false;
    const x = r.left + window.scrollX, y = r.top + window.scrollY;
    if (x + r.width < -50 || y + r.height < -50) return false;
    // Clipped to nothing (the "visually hidden" honeypot trick).
    const s = getComputedStyle(el);
    if (s.clip === 'rect(0px, 0px, 0px, 0px)' || s.clipPath === 'inset(50%)') return false;
    return true;
  },
  labelOf(el) {
    const parts = [];
    if (el.labels) for (const l of el.labels) parts.push(M.labelText(l));
    const lb = el.getAttribute('aria-labelledby');
    if (lb) parts.push(lb.split(/\s+/).map(id => M.txt(document.getElementById(id))).join(' '));
    const named = el.getAttribute('aria-label') || el.getAttribute('placeholder') || el.getAttribute('title');
    if (!parts.join('').trim() && !named) {
      // Text just before the control in its container (a label with no `for`, a <p>, a
      // table cell), looking up to three levels up, never across another control nor out of
      // its form.
      let node = el;
      for (let depth = 0; depth < 3 && node && !parts.length; depth++) {
        if (node.tagName === 'FORM' || node === document.body || node === document.documentElement) break;
        let prev = node.previousElementSibling;
        while (prev) {
          if (prev.matches(CONTROLS) || prev.querySelector(CONTROLS)) break;
          const t = M.labelText(prev);
          if (t) { parts.push(t); break; }
          prev = prev.previousElementSibling;
        }
        if (!parts.length && node.previousSibling && node.previousSibling.nodeType === 3) {
          const t = node.previousSibling.textContent.replace(/\s+/g, ' ').trim();
          if (t) parts.push(t);
        }
        node = node.parentElement;
      }
    }
    return parts.join(' ').slice(0, 300);
  },
  groupOf(el) {
    const fs = el.closest('fieldset');
    if (fs) {
      const lg = fs.querySelector('legend');
      if (lg) return M.txt(lg);
    }
    const rg = el.closest('[role=radiogroup], [role=group]');
    if (rg) {
      const l = rg.getAttribute('aria-label');
      if (l) return l;
      const lb = rg.getAttribute('aria-labelledby');
      if (lb) return M.txt(document.getElementById(lb));
    }
    // The text before the first control of the group's container.
    const box = el.parentElement && el.parentElement.closest('div, p, li, td, span') || el.parentElement;
    return box ? M.labelOf(box.querySelector('input') || el) : '';
  },
  describe() {
    const out = [];
    const forms = Array.from(document.forms);
    document.querySelectorAll(CONTROLS).forEach((el, index) => {
      const tag = el.tagName.toLowerCase();
      const type = tag === 'input' ? (el.getAttribute('type') || 'text').toLowerCase() : tag;
      let visible = M.shown(el);
      const labels = el.labels ? Array.from(el.labels) : [];
      // A styled checkbox or radio hides its box and shows its label: the label is clickable.
      if (!visible && (type === 'checkbox' || type === 'radio')) visible = labels.some(M.shown);
      out.push({
        index, tag, type,
        name: el.getAttribute('name') || '',
        id: el.id || '',
        label: M.labelOf(el),
        aria: el.getAttribute('aria-label') || '',
        placeholder: el.getAttribute('placeholder') || '',
        title: el.getAttribute('title') || '',
        autocomplete: el.getAttribute('autocomplete') || '',
        required: el.required || el.getAttribute('aria-required') === 'true',
        visible,
        disabled: el.disabled || el.readOnly === true,
        value: tag === 'select' ? '' : (el.value || ''),
        checked: !!el.checked,
        options: tag === 'select' ? Array.from(el.options).map(o => ({ text: M.txt(o) || o.label || '', value: o.value, disabled: o.disabled })) : [],
        group: type === 'radio' ? M.groupOf(el) : '',
        form: el.form ? forms.indexOf(el.form) : -1,
        tabindex: el.tabIndex,
      });
    });
    return out;
  },
  captcha() {
    const sel = '.g-recaptcha, .h-captcha, .cf-turnstile, [data-sitekey], iframe[src*="recaptcha"], iframe[src*="hcaptcha"], iframe[src*="challenges.cloudflare.com"], iframe[title*="captcha" i], iframe[title*="challenge" i], #cf-challenge-running, #challenge-form';
    for (const el of document.querySelectorAll(sel)) {
      if (M.shown(el) || el.matches('[data-sitekey]')) return 'a CAPTCHA (' + (el.className || el.tagName.toLowerCase()) + ')';
    }
    const text = (document.title + ' ' + M.txt(document.body)).toLowerCase();
    const words = ['captcha', 'je ne suis pas un robot', "i'm not a robot", 'i am not a robot', 'verify you are human', 'vérifiez que vous êtes humain', 'checking your browser', 'just a moment...', 'vérification de sécurité', 'êtes-vous un robot', 'are you a robot'];
    for (const w of words) if (text.includes(w)) return 'a bot check ("' + w + '")';
    return '';
  },
  observe(filled) {
    const nav = performance.getEntriesByType('navigation')[0];
    const errors = [];
    const errSel = '[role=alert], .error, .errors, .erreur, .erreurs, .invalid-feedback, .alert-danger, .alert-error, .field-error, .form-error, .wpcf7-not-valid-tip, .help-block.error, [class*="error"], [class*="erreur"], [class*="invalid"]';
    for (const el of document.querySelectorAll(errSel)) {
      if (el.matches(CONTROLS)) continue;
      const t = M.txt(el);
      if (t && t.length <= 400 && M.shown(el) && !errors.includes(t)) errors.push(t);
    }
    const invalid = [];
    const controls = Array.from(document.querySelectorAll(CONTROLS));
    let emptyVisible = 0, visibleFields = 0, filledShown = 0;
    controls.forEach((el, i) => {
      const type = (el.getAttribute('type') || el.tagName).toLowerCase();
      if (['hidden', 'submit', 'button', 'image', 'reset'].includes(type)) return;
      if (!M.shown(el)) return;
      visibleFields++;
      if (filled.includes(i)) filledShown++;
      const empty = (type === 'checkbox' || type === 'radio') ? false : !(el.value || '').trim();
      if (empty && !el.disabled && !filled.includes(i)) emptyVisible++;
      if (el.willValidate && el.validity && !el.validity.valid && el.validationMessage) {
        invalid.push((M.labelOf(el) || el.name || '') + ': ' + el.validationMessage);
      }
      if (el.getAttribute('aria-invalid') === 'true') {
        const d = el.getAttribute('aria-describedby');
        const t = d ? M.txt(document.getElementById(d)) : '';
        if (t && !errors.includes(t)) errors.push(t);
      }
    });
    return {
      url: location.href,
      status: nav && nav.responseStatus ? nav.responseStatus : 0,
      title: document.title || '',
      text: (document.body ? document.body.innerText || '' : '').replace(/[ \t\u00a0]+/g, ' ').replace(/\s*\n\s*/g, '\n').trim().slice(0, 6000),
      errors, invalid,
      captcha: M.captcha(),
      visible_fields: visibleFields,
      empty_fields: emptyVisible,
      filled_shown: filledShown,
      ready: document.readyState,
    };
  },
  // The button a person would press to send (or go on to the next step of) the form that
  // holds most of the filled fields: its index in querySelectorAll(BUTTONS), or -1.
  button(filled) {
    const controls = Array.from(document.querySelectorAll(CONTROLS));
    const count = new Map();
    for (const i of filled) {
      const f = controls[i] && controls[i].form;
      if (f) count.set(f, (count.get(f) || 0) + 1);
    }
    let form = null, best = 0;
    for (const [f, n] of count) if (n > best) { form = f; best = n; }
    const go = /(envoy|envoi|send|submit|soumettre|valider|validate|confirm|suivant|next|continuer|continue|étape suivante|contact|demander|je transmets|transmettre|ok\b)/i;
    const no = /(annuler|cancel|reset|effacer|réinitialiser|précédent|previous|retour|back|fermer|close|rechercher|search|connexion|login|newsletter|accepter les cookies|tout accepter|refuser)/i;
    let pick = -1, pickScore = -1;
    document.querySelectorAll(BUTTONS).forEach((el, i) => {
      if (!M.shown(el) || el.disabled) return;
      const tag = el.tagName.toLowerCase();
      const type = (el.getAttribute('type') || (tag === 'button' ? 'submit' : '')).toLowerCase();
      const text = (M.txt(el) || el.value || el.getAttribute('aria-label') || el.title || '').trim();
      if (no.test(text) || type === 'reset') return;
      let score = 0;
      if (form && (el.form === form || form.contains(el))) score += 4;
      if ((tag === 'button' || tag === 'input') && type === 'submit') score += 2;
      if (go.test(text)) score += 3;
      if (tag === 'a') score -= 3;
      if (score <= 1) return;
      if (score > pickScore) { pick = i; pickScore = score; }
    });
    return pick;
  },
};
