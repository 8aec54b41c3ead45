// Package validate checks Envoy resources with their generated validation
// rules, including the messages packed inside google.protobuf.Any fields
// (HTTP connection managers, tracers, access loggers): ValidateAll alone
// stops at an Any.
package validate

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

type validator interface{ ValidateAll() error }

// Deep validates m and every message inside it, unpacking Any fields. An
// Any whose type is not linked into the program is an error (the code that
// packed it links it, so in practice that means a type URL typo).
func Deep(m proto.Message) error {
	return deep(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().FullName()))
}

func deep(m protoreflect.Message, path string) error {
	var errs []error
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		return deep(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">")
	}
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if err := deep(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i)); err != nil {
					errs = append(errs, err)
				}
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if err := deep(mv.Message(), fmt.Sprintf("%s[%v]", p, k.Interface())); err != nil {
					errs = append(errs, err)
				}
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			if err := deep(v.Message(), p); err != nil {
				errs = append(errs, err)
			}
		}
		return true
	})
	return errors.Join(errs...)
}
