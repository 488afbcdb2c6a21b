// Buttons marked data-print open the browser's print dialog (no inline handler: the CSP allows no inline script).
document.querySelectorAll('[data-print]').forEach(function (button) {
  button.addEventListener('click', function () { window.print(); });
});
